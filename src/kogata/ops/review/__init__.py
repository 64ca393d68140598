"""The human review queue (``queue``) and its export as training data (``export``)."""

from kogata.ops.review.queue import ReviewConflict, ReviewItem, ReviewPending, ReviewQueue, UnknownResponse

__all__ = ["ReviewConflict", "ReviewItem", "ReviewPending", "ReviewQueue", "UnknownResponse"]
