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
    outbox (seq) {
        seq -> BigInt,
        resource_type -> Text,
        resource_id -> Text,
        version_id -> BigInt,
        action -> Text,
        correlation_id -> Text,
        created_at -> BigInt,
        dispatched_at -> Nullable<BigInt>,
        origin -> Text,
        routed_at -> Nullable<BigInt>,
        published_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Text,
        topic -> Text,
        filters -> Text,
        status -> Text,
        channel -> Text,
        endpoint -> Nullable<Text>,
        headers -> Text,
        payload -> Text,
        content_type -> Text,
        heartbeat_secs -> Nullable<BigInt>,
        timeout_secs -> BigInt,
        max_count -> BigInt,
        scope -> Text,
        patient -> Nullable<Text>,
        actor -> Text,
        events_since_start -> BigInt,
        delivered_through -> BigInt,
        handshake_done -> Bool,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        last_error -> Nullable<Text>,
        last_sent_at -> BigInt,
        lease_until -> BigInt,
        lease_owner -> Nullable<Text>,
        starts_after -> BigInt,
    }
}

diesel::table! {
    subscription_events (subscription_id, event_number) {
        subscription_id -> Text,
        event_number -> BigInt,
        outbox_seq -> BigInt,
        resource_type -> Text,
        resource_id -> Text,
        version_id -> BigInt,
        action -> Text,
        occurred_at -> BigInt,
        correlation_id -> Text,
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
        kind -> Text,
        patient -> Nullable<Text>,
        address -> Nullable<Text>,
        query -> Nullable<Text>,
        chain_pos -> Nullable<BigInt>,
        hash -> Nullable<Text>,
        patient_key -> Nullable<BigInt>,
        entity_key -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_blocks (seq) {
        seq -> BigInt,
        first_at -> BigInt,
        last_at -> BigInt,
        entries -> Integer,
        body -> Text,
        chain_pos -> Nullable<BigInt>,
        hash -> Nullable<Text>,
        posted -> Bool,
    }
}

diesel::table! {
    audit_postings (term, block) {
        term -> BigInt,
        block -> BigInt,
    }
}

// The search index tables: rows keyed by their owner and a row number within it.

diesel::table! {
    search_string (resource_type, resource_id, n) {
        resource_type -> Text,
        resource_id -> Text,
        n -> Integer,
        param -> Text,
        norm -> Text,
        exact -> Text,
    }
}

diesel::table! {
    search_token (resource_type, resource_id, n) {
        resource_type -> Text,
        resource_id -> Text,
        n -> Integer,
        param -> Text,
        system -> Nullable<Text>,
        code -> Nullable<Text>,
        text -> Nullable<Text>,
    }
}

diesel::table! {
    search_contained (resource_type, resource_id) {
        resource_type -> Text,
        resource_id -> Text,
        container_type -> Text,
        container_id -> Text,
        local_id -> Text,
    }
}

diesel::table! {
    search_reference (resource_type, resource_id, n) {
        resource_type -> Text,
        resource_id -> Text,
        n -> Integer,
        param -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        url -> Nullable<Text>,
    }
}

diesel::table! {
    search_date (resource_type, resource_id, n) {
        resource_type -> Text,
        resource_id -> Text,
        n -> Integer,
        param -> Text,
        low -> BigInt,
        high -> BigInt,
    }
}

diesel::table! {
    search_number (resource_type, resource_id, n) {
        resource_type -> Text,
        resource_id -> Text,
        n -> Integer,
        param -> Text,
        value -> Double,
    }
}

diesel::table! {
    search_quantity (resource_type, resource_id, n) {
        resource_type -> Text,
        resource_id -> Text,
        n -> Integer,
        param -> Text,
        low -> Double,
        high -> Double,
        system -> Nullable<Text>,
        code -> Nullable<Text>,
        unit -> Nullable<Text>,
    }
}

diesel::table! {
    search_uri (resource_type, resource_id, n) {
        resource_type -> Text,
        resource_id -> Text,
        n -> Integer,
        param -> Text,
        value -> Text,
    }
}

diesel::table! {
    search_composite (resource_type, resource_id, n) {
        resource_type -> Text,
        resource_id -> Text,
        n -> Integer,
        param -> Text,
        system1 -> Nullable<Text>,
        code1 -> Text,
        system2 -> Nullable<Text>,
        code2 -> Nullable<Text>,
        low -> Nullable<Double>,
        high -> Nullable<Double>,
        date_low -> Nullable<BigInt>,
        date_high -> Nullable<BigInt>,
        text -> Nullable<Text>,
        value3 -> Nullable<Double>,
    }
}

// SMART: the keys this server signs access tokens with.

diesel::table! {
    auth_signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        private_pkcs8 -> Text,
        created_at -> BigInt,
        retired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    auth_clients (client_id) {
        client_id -> Text,
        kind -> Text,
        secret_hash -> Nullable<Text>,
        jwks -> Nullable<Text>,
        jwks_uri -> Nullable<Text>,
        scope -> Text,
        redirect_uris -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    auth_assertions (client_id, jti) {
        client_id -> Text,
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    auth_revoked (jti) {
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    auth_users (username) {
        username -> Text,
        password_hash -> Text,
        fhir_user -> Text,
        created_at -> BigInt,
        roles -> Text,
    }
}

diesel::table! {
    alert_rules (version) {
        version -> BigInt,
        recorded_at -> BigInt,
        actor -> Text,
        config -> Text,
    }
}

diesel::table! {
    alerts (id) {
        id -> Text,
        rule -> Text,
        subject -> Text,
        severity -> Text,
        status -> Text,
        raised_at -> BigInt,
        resolved_at -> Nullable<BigInt>,
        detail -> Text,
    }
}

diesel::table! {
    admin_sessions (token_hash) {
        token_hash -> Text,
        username -> Text,
        csrf -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    auth_codes (code_hash) {
        code_hash -> Text,
        client_id -> Text,
        redirect_uri -> Text,
        code_challenge -> Text,
        username -> Text,
        fhir_user -> Text,
        scope -> Text,
        patient -> Nullable<Text>,
        encounter -> Nullable<Text>,
        expires_at -> BigInt,
        used -> Bool,
        context -> Nullable<Text>,
    }
}

diesel::table! {
    auth_refresh (token_hash) {
        token_hash -> Text,
        family -> Text,
        client_id -> Text,
        username -> Text,
        fhir_user -> Text,
        scope -> Text,
        patient -> Nullable<Text>,
        expires_at -> BigInt,
        used -> Bool,
        revoked -> Bool,
    }
}

diesel::table! {
    hl7v2_messages (id) {
        id -> Text,
        correlation_id -> Text,
        sending_application -> Text,
        sending_facility -> Text,
        control_id -> Text,
        content_hash -> Text,
        message_type -> Text,
        trigger_event -> Text,
        version -> Text,
        received_at -> BigInt,
        processed_at -> BigInt,
        status -> Text,
        ack_code -> Text,
        error_location -> Nullable<Text>,
        error_code -> Nullable<Text>,
        error -> Nullable<Text>,
        attempts -> Integer,
        resources -> Text,
        raw -> Text,
        mrn -> Nullable<Text>,
        patient -> Nullable<Text>,
        acked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    installation (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    route_configs (version) {
        version -> BigInt,
        recorded_at -> BigInt,
        actor -> Text,
        summary -> Text,
        config -> Text,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        lease_owner -> Nullable<Text>,
        lease_until -> BigInt,
    }
}

diesel::table! {
    vendor_cursors (source, record_type) {
        source -> Text,
        record_type -> Text,
        cursor -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    vendor_exceptions (seq) {
        seq -> BigInt,
        source -> Text,
        record_type -> Text,
        vendor_key -> Nullable<Text>,
        record -> Text,
        element -> Text,
        path -> Text,
        reason -> Text,
        status -> Text,
        created_at -> BigInt,
        resolved_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    dropped_files (source, sha256) {
        source -> Text,
        sha256 -> Text,
        name -> Text,
        format -> Text,
        status -> Text,
        done_count -> BigInt,
        report -> Text,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_deliveries (source, signature) {
        source -> Text,
        signature -> Text,
        taken_at -> BigInt,
    }
}

diesel::table! {
    route_messages (seq) {
        seq -> BigInt,
        target -> Text,
        outbox_seq -> BigInt,
        correlation_id -> Text,
        focus -> Text,
        changes -> Text,
        patient -> Nullable<Text>,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        ack_code -> Nullable<Text>,
        last_error -> Nullable<Text>,
        kind -> Nullable<Text>,
        message -> Nullable<Text>,
    }
}

diesel::table! {
    bulk_exports (id) {
        id -> Text,
        owner -> Text,
        actor -> Text,
        scope -> Text,
        patient -> Nullable<Text>,
        request -> Text,
        params -> Text,
        status -> Text,
        created_at -> BigInt,
        transaction_time -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        heartbeat_at -> Nullable<BigInt>,
        output -> Nullable<Text>,
        error -> Nullable<Text>,
        runner -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    resource_versions,
    resources,
    outbox,
    subscription_events,
    subscriptions,
    audit_events,
    audit_blocks,
    audit_postings,
    search_string,
    search_token,
    search_reference,
    search_date,
    search_number,
    search_quantity,
    search_uri,
    search_composite,
    search_contained
);

diesel::allow_tables_to_appear_in_same_query!(admin_sessions, auth_users);
