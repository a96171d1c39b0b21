//! ADT^A40 (merge patient, by identifier list): each PID names the surviving patient and its
//! MRG the prior one (MRG-1, its identifiers). The surviving Patient is written as PID states
//! it; the merge itself (the prior Patient marked inactive and `replaced-by`, the survivor
//! `replaces`, and every resource that pointed at the prior patient moved to the survivor)
//! needs the store, and is done in the message's transaction (see `hl7v2::merge`).
//! IG: ADT_A39/A40 and MRG[Patient].

use super::{Context, Mapped, Merge, Unmapped, failed};

pub fn map(cx: &Context) -> Result<Mapped, Unmapped> {
    let mut out = Mapped::default();
    // each patient group: a PID and the MRG that follows it
    let mut pid = None;
    for seg in &cx.msg.segments {
        match seg.id.as_str() {
            "PID" => pid = Some(seg),
            "MRG" => {
                let Some(p) = pid.take() else {
                    return Err(failed(
                        "MRG",
                        "100",
                        "an MRG segment without the PID before it",
                    ));
                };
                let survivor = super::patient::patient(cx, p)?;
                let prior = super::patient::identifiers(cx, seg, &[1]);
                let from = super::patient::patient_id(cx, &prior).ok_or_else(|| {
                    failed(
                        "MRG-1",
                        "101",
                        "MRG-1 (prior patient identifier list) is empty: which patient to merge is not said",
                    )
                })?;
                if from == survivor.id {
                    return Err(failed(
                        "MRG-1",
                        "103",
                        "MRG-1 names the surviving patient itself: there is nothing to merge",
                    ));
                }
                out.merges.push(Merge {
                    from,
                    into: survivor.id.clone(),
                    identifiers: prior,
                });
                out.resources.push(survivor);
            }
            _ => {}
        }
    }
    if out.merges.is_empty() {
        return Err(failed(
            "MRG",
            "100",
            "an ADT^A40 needs a PID and, after it, an MRG segment (the patient merged into it)",
        ));
    }
    Ok(out)
}
