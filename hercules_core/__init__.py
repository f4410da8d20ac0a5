"""HERCULES: hierarchical k-means with LLM-written titles and descriptions for every cluster."""
