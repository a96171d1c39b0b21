//! People who sign in at `/auth/authorize` (`emrsync user add`): a username, an argon2 hash of
//! the password, and the FHIR resource they are (`fhirUser`).

use super::secret;
use crate::fhir::resource::now_micros;
use crate::store::schema::auth_users;
use crate::store::{DbConnection, StoreError, inserted};
use diesel::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    /// `Practitioner/123`, `Patient/456`, `RelatedPerson/7` or `Person/8`.
    pub fhir_user: String,
    /// Space-separated: `admin` may use the dashboard (`auth::sessions`).
    pub roles: String,
}

impl User {
    /// The patient this user is, when a patient signs in for themselves.
    pub fn own_patient(&self) -> Option<&str> {
        self.fhir_user.strip_prefix("Patient/")
    }
}

pub fn add(
    conn: &mut DbConnection,
    username: &str,
    password: &str,
    fhir_user: &str,
) -> Result<(), String> {
    if username.trim().is_empty() || password.len() < 8 {
        return Err("give a username and a password of at least 8 characters".into());
    }
    let valid_user = fhir_user.split_once('/').is_some_and(|(t, id)| {
        matches!(t, "Practitioner" | "Patient" | "RelatedPerson" | "Person") && !id.is_empty()
    });
    if !valid_user {
        return Err(format!(
            "fhirUser '{fhir_user}' must be Practitioner/, Patient/, RelatedPerson/ or Person/ and an id"
        ));
    }
    let hash = secret::hash(password)?;
    let fresh = inserted(
        diesel::insert_into(auth_users::table)
            .values((
                auth_users::username.eq(username),
                auth_users::password_hash.eq(hash),
                auth_users::fhir_user.eq(fhir_user),
                auth_users::created_at.eq(now_micros()),
            ))
            .execute(conn),
    )
    .map_err(|e| e.to_string())?;
    if !fresh {
        return Err(format!("a user '{username}' already exists"));
    }
    Ok(())
}

/// Give `username` a role (`auth::sessions::ADMIN`); false when there is no such user.
pub fn grant(conn: &mut DbConnection, username: &str, role: &str) -> Result<bool, StoreError> {
    let roles: Option<String> = auth_users::table
        .filter(auth_users::username.eq(username))
        .select(auth_users::roles)
        .get_result(conn)
        .optional()?;
    let Some(roles) = roles else {
        return Ok(false);
    };
    if !super::sessions::has_role(&roles, role) {
        let roles = format!("{roles} {role}").trim().to_string();
        diesel::update(auth_users::table.filter(auth_users::username.eq(username)))
            .set(auth_users::roles.eq(roles))
            .execute(conn)?;
    }
    Ok(true)
}

/// The user whose password this is; `None` for an unknown user or a wrong password (the
/// caller cannot tell which, and neither can an attacker).
pub fn sign_in(
    conn: &mut DbConnection,
    username: &str,
    password: &str,
) -> Result<Option<User>, StoreError> {
    let row: Option<(String, String, String)> = auth_users::table
        .filter(auth_users::username.eq(username))
        .select((
            auth_users::password_hash,
            auth_users::fhir_user,
            auth_users::roles,
        ))
        .get_result(conn)
        .optional()?;
    Ok(match row {
        Some((hash, fhir_user, roles)) if secret::matches(&hash, password) => Some(User {
            username: username.to_string(),
            fhir_user,
            roles,
        }),
        Some(_) => None,
        None => {
            // spend the time a real check would, so that timing does not tell users apart
            secret::matches(DUMMY_HASH, password);
            None
        }
    })
}

const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$mP5zVXYF1rKlkF3vXp6xmFJbqN6C8HHgOhsWjZCqnJk";

#[cfg(test)]
mod tests {
    #[test]
    fn the_stand_in_hash_is_a_real_one() {
        // an unparsable stand-in would make unknown users answer faster than known ones
        assert!(argon2::password_hash::PasswordHash::new(super::DUMMY_HASH).is_ok());
    }
}
