ALTER TABLE leases RENAME TO route_targets;
