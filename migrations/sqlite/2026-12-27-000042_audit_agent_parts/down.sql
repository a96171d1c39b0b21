DELETE FROM pending_backfills WHERE name = 'audit_agent_parts';
