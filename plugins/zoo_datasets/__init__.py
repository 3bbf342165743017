"""Datasets for training: WikiText, code-alpaca, source trees (with FIM) and HumanEval.

Each dataset is a reader of raw files plus a preprocessor to token samples;
samples are stored as a memory-mapped numpy file and/or MindRecord.
"""
