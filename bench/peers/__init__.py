"""One driver per library (`<lib>_driver.py`), each run as a script in that library's own
virtualenv by bench/run.py; `_common.py` holds what they share."""
