"""tap-custobar with the page-at-a-time record path switched off: the SDK's standard
per-record path, for `python -m benchmarks.bench --sdk-path` (the 'before' figures)."""

from tap_custobar.page_writer import PageWriterStream
from tap_custobar.tap import main

if __name__ == "__main__":
    PageWriterStream.page_path_enabled = False
    main()
