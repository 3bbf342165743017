"""An example plugin package for codellama-zoo."""
