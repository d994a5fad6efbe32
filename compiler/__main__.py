"""`python -m compiler` is the `torch2keras` command."""

from .cli import main

raise SystemExit(main())
