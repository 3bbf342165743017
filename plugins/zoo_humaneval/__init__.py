"""HumanEval and HumanEval-infilling for codellama-zoo: generation, a real sandbox, pass@k, ``zoo eval``."""
