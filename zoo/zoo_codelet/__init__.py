"""zoo-codelet: a few-million-parameter model of the Code Llama architecture, trained by this project.

Not Meta's Code Llama: a tiny model pretrained (with fill-in-the-middle) on
the Python standard library and instruct-tuned on docstring → code pairs, so
``zoo run`` does something real on a machine without downloaded weights.
"""
