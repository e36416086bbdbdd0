"""Allow ``python -m ssl_mix`` (and ``torchrun -m ssl_mix``) as an alias of the ``ssl-mix`` command."""

from ssl_mix.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
