"""Organisations (団体) and their departments (課等); the profile is data, never code."""
