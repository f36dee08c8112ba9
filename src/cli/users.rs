//! `lakeward users …`: create users and API tokens.

use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::jobs::Registry;
use crate::runtime::Components;
use crate::store::Role;
use crate::users::{create_api_token, create_user, new_password};

async fn open(config: Config) -> anyhow::Result<Components> {
    Components::open(config, Registry::builtin()).await.context("opening the database")
}

pub async fn create(
    config: Config,
    username: &str,
    role: &str,
    password: Option<String>,
) -> anyhow::Result<ExitCode> {
    let role = if role == "admin" { Role::Admin } else { Role::Viewer };
    let c = open(config).await?;
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

pub async fn token(config: Config, username: &str, name: &str) -> anyhow::Result<ExitCode> {
    let c = open(config).await?;
    if c.store.get_user(username).await?.is_none() {
        bail!("no user `{username}`: create it first with `lakeward users create`");
    }
    let token = create_api_token(&c.store, username, name).await?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
