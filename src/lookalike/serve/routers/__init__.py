"""One router per resource; every route declares the scope it needs (``deps``)."""
