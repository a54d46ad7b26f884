//! Namespaces, service accounts and their tokens.

use std::time::Instant;

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::wait::await_condition;

use super::TestCluster;
use super::supervise::until;

/// Lifetime of the tokens [`TestCluster::service_account_token`] mints (the API's minimum is
/// ten minutes; an hour outlives any test).
const TOKEN_SECONDS: i64 = 3600;

impl TestCluster {
    /// Creates namespace `name` (fine if it exists) and waits until Pods can be created in it:
    /// its `default` ServiceAccount exists and, with the token controller running, has its
    /// token Secret (the 1.20 ServiceAccount admission plugin rejects Pods before that).
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<Namespace> {
        let api: Api<Namespace> = Api::all(self.admin_client());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let namespace = match api.create(&PostParams::default(), &namespace).await {
            Ok(ns) => ns,
            Err(kube::Error::Api(status)) if status.code == 409 => api
                .get(name)
                .await
                .with_context(|| format!("get namespace {name}"))?,
            Err(e) => return Err(e).with_context(|| format!("create namespace {name}")),
        };
        self.ensure_service_account(name, "default").await?;
        Ok(namespace)
    }

    /// Creates ServiceAccount `namespace/name` unless it exists and waits until Pods can use
    /// it (see [`Self::create_namespace`]). Without the token controller a created account gets
    /// `automountServiceAccountToken: false`, so Pods are admitted without a token Secret.
    pub async fn ensure_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<ServiceAccount> {
        ensure_service_account(
            &self.admin,
            namespace,
            name,
            self.token_controller,
            self.deadline(),
        )
        .await
    }

    /// Mints a token for ServiceAccount `namespace/name` (which must exist) with the TokenRequest
    /// API, valid for an hour, audience the API server.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> anyhow::Result<String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin_client(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                // Empty: the API server's own audiences.
                audiences: Vec::new(),
                expiration_seconds: Some(TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let answer = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("token request for service account {namespace}/{name}"))?;
        let token = answer
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .with_context(|| format!("token request for {namespace}/{name} answered without a token"))?;
        // A JWT: its signature is what makes it a credential.
        let signature = token.rsplit('.').next().unwrap_or_default();
        crate::ledger::register("TestCluster service account token (signature)", signature);
        Ok(token)
    }

    /// A client authenticated as ServiceAccount `namespace/name` (created if missing, see
    /// [`Self::ensure_service_account`]), with a token from [`Self::service_account_token`].
    pub async fn client_for_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<kube::Client> {
        self.ensure_service_account(namespace, name).await?;
        let token = self.service_account_token(namespace, name).await?;
        self.client_with_token(&token).await
    }
}

/// See [`TestCluster::ensure_service_account`]; `token_controller`: whether the controller
/// manager creates token Secrets.
pub(super) async fn ensure_service_account(
    admin: &kube::Client,
    namespace: &str,
    name: &str,
    token_controller: bool,
    deadline: Instant,
) -> anyhow::Result<ServiceAccount> {
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        automount_service_account_token: (!token_controller).then_some(false),
        ..ServiceAccount::default()
    };
    // For `default` the service-account controller may win the race: both outcomes are fine.
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(e).with_context(|| format!("create service account {namespace}/{name}")),
    }
    if !token_controller {
        return api
            .get(name)
            .await
            .with_context(|| format!("get service account {namespace}/{name}"));
    }
    let has_token = |sa: Option<&ServiceAccount>| {
        sa.and_then(|sa| sa.secrets.as_ref())
            .is_some_and(|s| !s.is_empty())
    };
    until(
        deadline,
        &format!("the token Secret of service account {namespace}/{name}"),
        await_condition(api, name, has_token),
    )
    .await?
    .with_context(|| format!("watch service account {namespace}/{name}"))?
    .with_context(|| format!("service account {namespace}/{name} was deleted"))
}
