"""Entry point of the Python package's benchmark (``scripts/bench-python``).

Kept empty at import: worker processes started afresh (ours, loky,
CPython's ``spawn``) import the parent's main module as ``__mp_main__``,
and the harness's imports (loky, pebble, the package) would otherwise
slow down every pool start-up measured.
"""

if __name__ == "__main__":
    import sys

    from harness import main

    sys.exit(main(sys.argv[1:]))
