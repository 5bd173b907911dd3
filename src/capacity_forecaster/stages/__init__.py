"""Each pipeline stage as a lake-to-lake step recorded in a run manifest."""
