//! `lakeward users …`: create and delete users; create, list and revoke API tokens.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use crate::config::Config;
use crate::domain::Role;
use crate::store::users;
use crate::time::display;
use crate::users::{create_api_token, create_user, new_password};

pub async fn create(
    config: Config,
    username: &str,
    role: &str,
    password: Option<String>,
) -> anyhow::Result<ExitCode> {
    let role = if role == "admin" { Role::Admin } else { Role::Viewer };
    let c = super::open(config).await?;
    let generated = password.is_none();
    let password = password.unwrap_or_else(new_password);
    create_user(&c.store, username, &password, role).await?;
    if generated {
        println!("user `{username}` ({role}) saved with password: {password}");
    } else {
        println!("user `{username}` ({role}) saved");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(
    config: Config,
    username: &str,
    name: &str,
    lifetime: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    if users::get(c.store.read(), username).await?.is_none() {
        bail!("no user `{username}`: create it first with `lakeward users create`");
    }
    let token = create_api_token(&c.store, username, name, lifetime).await?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

pub async fn tokens(config: Config, username: Option<&str>) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    println!("{:<16}  {:<20}  {:<20}  {:<20}  EXPIRES", "ID", "USER", "NAME", "CREATED");
    for token in users::list_api_tokens(c.store.read(), username).await? {
        let expires = token.expires_at.map_or("never".to_string(), display);
        println!(
            "{:<16}  {:<20}  {:<20}  {:<20}  {expires}",
            token.id,
            token.username,
            token.name,
            display(token.created_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(config: Config, id: &str) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    if !users::revoke_api_token(c.store.write(), id, None).await? {
        bail!("no API token with id `{id}` (see `lakeward users tokens`)");
    }
    println!("token {id} revoked");
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(config: Config, username: &str) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    if !users::delete(c.store.write(), username).await? {
        bail!("no user `{username}`");
    }
    println!("user `{username}` deleted, with its sessions and API tokens");
    Ok(ExitCode::SUCCESS)
}
