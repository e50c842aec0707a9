"""Simulated robot: joint producer/consumer and WebRTC camera producers in Arena rooms."""
