"""Dynamically scaled initialization: passes that learn each parameter block's scale."""
