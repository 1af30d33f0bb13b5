"""Allow `python -m tap_custobar`."""

from tap_custobar.tap import main

main()
