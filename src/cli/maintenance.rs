//! Commands that maintain a server's database while no server (or any) runs: replaying the
//! HL7v2 exception queue and moving to a new master key.

use crate::config::StoreArgs;

#[derive(clap::Args)]
pub struct RekeyArgs {
    /// The database, with its current master key (--master-key-file or EMRSYNC_MASTER_KEY).
    #[command(flatten)]
    pub store: StoreArgs,
    /// A file holding the new master key (base64 of 32 random bytes); or the key itself in
    /// EMRSYNC_NEW_MASTER_KEY.
    #[arg(long, env = "EMRSYNC_NEW_MASTER_KEY_FILE")]
    pub new_master_key_file: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The message's id (as `GET /admin/hl7v2/messages` lists it).
    #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
    pub id: Option<String>,
    /// Every message of the exception queue, oldest first.
    #[arg(long)]
    pub all_failed: bool,
    /// Replay this corrected text instead of the stored one (with an id only).
    #[arg(long, conflicts_with = "all_failed")]
    pub message_file: Option<std::path::PathBuf>,
}

/// `emrsync replay`: one message or the whole exception queue; true when every one was
/// accepted (AA).
pub fn replay(args: ReplayArgs) -> anyhow::Result<bool> {
    use crate::adapters::hl7v2::queue;
    let settings = crate::config::Settings::new("127.0.0.1:0", args.store);
    let store = crate::store::Store::open(&settings.store_settings()?)?;
    let inbound = crate::startup::inbound(crate::startup::ingest(store, &settings)?, &settings);
    let outcomes = match &args.id {
        Some(id) => {
            let corrected = match &args.message_file {
                Some(f) => Some(crate::adapters::hl7v2::message::decode(&std::fs::read(f)?)),
                None => None,
            };
            match queue::replay(&inbound, id, corrected)? {
                Some(o) => vec![(id.clone(), o)],
                None => anyhow::bail!("no HL7v2 message {id} in the archive"),
            }
        }
        None => queue::replay_failed(&inbound)?,
    };
    // the unmapped codes the replayed messages carried
    inbound.ingest.flush_hooks();
    for (id, o) in &outcomes {
        let why = o.problem.as_ref().map(|p| format!(": {}", p.text));
        println!(
            "{id} {} {}{}",
            o.code.as_str(),
            o.correlation_id,
            why.unwrap_or_default()
        );
    }
    let accepted = outcomes
        .iter()
        .filter(|(_, o)| o.code == crate::adapters::hl7v2::ack::AckCode::Accept)
        .count();
    let refused = outcomes.len() - accepted;
    match refused {
        0 => println!("{accepted} replayed and accepted"),
        _ => println!(
            "{} replayed: {accepted} accepted, {refused} refused again (still in the exception queue)",
            outcomes.len()
        ),
    }
    Ok(refused == 0)
}

/// `emrsync rekey`.
pub fn rekey(args: RekeyArgs) -> anyhow::Result<()> {
    use crate::store::seal::Seal;
    let old = args.store.seal()?.ok_or_else(|| {
        anyhow::anyhow!("give the current master key (--master-key-file or EMRSYNC_MASTER_KEY)")
    })?;
    let new = Seal::from_file_or_env(
        args.new_master_key_file.as_deref(),
        "EMRSYNC_NEW_MASTER_KEY",
    )?
    .ok_or_else(|| {
        anyhow::anyhow!("give the new master key (--new-master-key-file or EMRSYNC_NEW_MASTER_KEY)")
    })?;
    let database = args.store.database()?;
    let r = crate::rekey::rotate(&database, &old, &new)?;
    println!(
        "{}: {}resealed {} signing key(s), {} channel header set(s), {} archived message(s); \
         start the servers with the new master key",
        database.describe(),
        if r.file_rewritten {
            "file rewritten under the new key, "
        } else {
            ""
        },
        r.signing_keys,
        r.channel_headers,
        r.archived_messages
    );
    Ok(())
}
