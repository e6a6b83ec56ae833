"""Operations shared by the CLI and the TUI: read models (observe) and operator writes (admin)."""
