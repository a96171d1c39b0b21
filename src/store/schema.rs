//! diesel's view of the tables in `migrations/{sqlite,postgres}`; the two backends share it.

diesel::table! {
    resource_versions (seq) {
        seq -> BigInt,
        resource_type -> Text,
        resource_id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        method -> Text,
        deleted -> Bool,
        content -> Text,
        correlation_id -> Text,
    }
}

diesel::table! {
    resources (resource_type, resource_id) {
        resource_type -> Text,
        resource_id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
    }
}

diesel::table! {
    resource_identifiers (resource_type, resource_id, system, value) {
        resource_type -> Text,
        resource_id -> Text,
        system -> Text,
        value -> Text,
    }
}

diesel::table! {
    outbox (seq) {
        seq -> BigInt,
        resource_type -> Text,
        resource_id -> Text,
        version_id -> BigInt,
        action -> Text,
        correlation_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        recorded_at -> BigInt,
        actor -> Text,
        action -> Text,
        resource_type -> Nullable<Text>,
        resource_id -> Nullable<Text>,
        version_id -> Nullable<BigInt>,
        outcome -> Text,
        correlation_id -> Text,
        detail -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    resource_versions,
    resources,
    resource_identifiers,
    outbox,
    audit_events
);
