"""``python -m etl.fakeapi``: serve the Tsanghi-compatible test API in the foreground."""

from etl.fakeapi.server import serve


def main() -> None:
    serve(prog_name="python -m etl.fakeapi")


if __name__ == "__main__":
    main()
