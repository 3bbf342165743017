"""The Code Llama family: 7B/13B/34B/70B x base/Python/Instruct."""
