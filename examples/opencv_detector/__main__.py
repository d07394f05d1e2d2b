"""python -m examples.opencv_detector --port 8080 --cascades face,eye: serve OpenCV cascades over the wire contract."""

import logging
import sys

import click

from .cascades import CASCADES


@click.command(context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, help="Port (0: any free port).")
@click.option("--cascades", default="face", metavar="NAME[,NAME...]",
              help=f"Cascades to run; class ids follow this order. Known: {', '.join(CASCADES)}.")
def main(host, port, cascades):
    """Serve OpenCV's pre-trained cascades behind POST /invocations and GET /ping until Ctrl-C."""
    from .server import DetectorServer

    names = tuple(name.strip() for name in cascades.split(",") if name.strip())
    unknown = [name for name in names if name not in CASCADES]
    if unknown or not names:
        raise click.BadParameter(f"unknown cascade(s) {', '.join(unknown) or '(none)'}; "
                                 f"choose from {', '.join(CASCADES)}", param_hint="--cascades")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    server = DetectorServer(names, host, port)
    click.echo(f"ready: {server.url} classes {','.join(server.class_names)}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
