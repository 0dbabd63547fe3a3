"""Text conditioning: CLIP's BPE tokenizer, prompt encoding with a cache, GenDeg's prompts."""
