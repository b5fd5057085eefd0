"""Built-in plugins: registered by the same call as installed ones, marked ``trylast`` so those win."""
