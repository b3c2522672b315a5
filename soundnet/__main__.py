"""``python -m soundnet``: the ``soundnet`` command line."""

from soundnet.cli import main

if __name__ == "__main__":
    main(prog_name="soundnet")
