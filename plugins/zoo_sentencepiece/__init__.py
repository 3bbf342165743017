"""SentencePiece tokenizer with Code Llama's infill and chat pieces."""
