"""Graph-RL multi-round conversational recommendation policies (UNICORN, SCPR, EAR, CRM, rule baselines)."""
