"""Synthetic data without Django: dedup (exact and MinHash LSH), diversity (distinct-n, self-BLEU), ROUGE-L,
the filters and prompts of Self-Instruct, Evol-Instruct and Magpie, constitutional critique and revision
prompts, pair-building strategies, and the best-of-N curve with its KL bound. ``synth`` runs them in jobs."""
