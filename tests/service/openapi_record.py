"""`python -m tests.service.openapi_record`: write the app's /openapi.json (test settings) to
tests/service/data/openapi.json, the published document test_openapi.py holds the app to.

Run it when the API changes on purpose; the diff of that file is the change to the contract."""
from __future__ import annotations

import json
from pathlib import Path

from tests.service.conftest import served_document

RECORDED = Path(__file__).with_name("data") / "openapi.json"


def main():
    RECORDED.write_text(json.dumps(served_document(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORDED}")


if __name__ == "__main__":
    main()
