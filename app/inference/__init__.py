"""Model inference: the SavedModel wrapper and the async micro-batcher."""
