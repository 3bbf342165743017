"""Decoding strategies: greedy and sampling, batched and streamed."""
