"""Attention kernels as plugins: SDPA and FlashAttention for torch (MindSpore's come with its runtime)."""
