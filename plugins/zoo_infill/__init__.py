"""Fill-in-the-middle prompts (PSM/SPM) built at token level."""
