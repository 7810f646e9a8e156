#!/usr/bin/python3
"""A real RTSP server (GStreamer's gst-rtsp-server) on 127.0.0.1, for perch's stream tests:

    rtsp_server.py PORT CLIP.mp4

serves the H.264 video of CLIP.mp4 at rtsp://127.0.0.1:PORT/cam as RTP/H.264 over TCP only
(what most IP cameras send; TCP, as behind NAT), each client from the start, and prints
"ready" once it listens. Needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0 and
gstreamer1.0-plugins-good (qtdemux, rtph264pay).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> None:
    port, clip = sys.argv[1:3]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{clip}" ! qtdemux ! rtph264pay name=pay0 pt=96 config-interval=1 )')
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    factory.set_shared(False)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server.py: cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
