"""``python -m fakeapi``: serve the Tsanghi-compatible test API in the foreground."""

from fakeapi.server import serve


def main() -> None:
    serve(prog_name="python -m fakeapi")


if __name__ == "__main__":
    main()
