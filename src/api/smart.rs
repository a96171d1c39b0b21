//! The public face of the token issuer: its signing keys (`GET /auth/jwks`), which resource
//! servers and clients use to verify the tokens this server signs.

use super::AppState;
use actix_web::{HttpResponse, web};

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "public, max-age=300"))
        .json(state.authority.jwks())
}
