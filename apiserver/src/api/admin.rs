//! `faas.admin.v1.Admin`: deploy, read, list and delete functions, and the service layer
//! (publish versions, set and roll back aliases, set routes, describe a function).
//!
//! Writes run on a blocking thread (they wait for the database's disk write) and run to the
//! end even when the caller goes away. The scheduler (`faas.scheduler.v1`) hears of what
//! changes its containers: a deleted function or version is retired; a version an alias
//! moved away from is held warm for `--version-grace-ms`, so a rollback finds it warm.
//! `FunctionLogs` is answered by [`crate::api::logs`] (the scheduler lists its nodes, every
//! node is asked for the function's lines).

use std::sync::Arc;
use std::time::Duration;

use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::admin::{self, admin_server::Admin};
use faas_proto::scheduler_admin::scheduler_admin_client::SchedulerAdminClient;
use faas_proto::scheduler_admin::{HoldFunctionRequest, RetireFunctionRequest};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::api::admin_queue;
use crate::api::async_runner::AsyncRunner;
use crate::api::convert::{admin_record, registry_status, spec_from_admin};
use crate::api::routing::{
    alias_record, policy_from_admin, policy_to_admin, target_status, version_record,
    weights_from_admin,
};
use crate::api::server::LiveRouter;
use crate::model::routing::{show_weights, version_name};
use crate::service::routing::AliasChange;
use crate::service::{Registry, RegistryError};

/// `faas.admin.v1.Admin`.
#[derive(Clone, Debug)]
pub struct AdminService {
    registry: Arc<Registry>,
    router: Arc<LiveRouter>,
    scheduler: Option<SchedulerAdminClient<AuthChannel>>,
    version_grace: Duration,
    /// The cluster token on calls to the scheduler and the nodes.
    auth: ClusterAuth,
    /// The asynchronous queue (retry settings, describe's figures).
    queue: Option<AsyncRunner>,
}

/// How often the scheduler is told again which versions to hold warm.
pub const HOLD_REFRESH: Duration = Duration::from_secs(30);

/// How long the scheduler is given to take note of a deleted function.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl AdminService {
    /// The admin service over the router's registry; versions an alias leaves are held warm
    /// for `version_grace`.
    pub fn new(router: Arc<LiveRouter>, version_grace: Duration) -> AdminService {
        AdminService {
            registry: router.invoker().registry().clone(),
            router,
            scheduler: None,
            version_grace,
            auth: ClusterAuth::default(),
            queue: None,
        }
    }

    /// The same service, with the asynchronous queue's settings and figures.
    pub fn with_queue(mut self, runner: AsyncRunner) -> AdminService {
        self.queue = Some(runner);
        self
    }

    /// The same service, telling the scheduler (`faas.scheduler.v1`) of deleted functions so
    /// their containers drain.
    /// Its calls (and those to the nodes, for logs) carry the cluster token of `auth`.
    pub fn with_scheduler(mut self, channel: Channel, auth: ClusterAuth) -> AdminService {
        self.scheduler = Some(SchedulerAdminClient::new(auth.channel(channel)));
        self.auth = auth;
        self
    }

    /// Tells the scheduler, now and every [`HOLD_REFRESH`] until `shutdown`, which versions
    /// to keep warm and for how long still (`Registry::warm_holds`): a scheduler that
    /// restarted (and forgot its holds) hears of them again, and so does the scheduler after
    /// this server restarts.
    pub fn keep_holds(&self, shutdown: faas_common::shutdown::Shutdown) {
        if self.scheduler.is_none() || self.version_grace.is_zero() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let grace = i64::try_from(this.version_grace.as_millis()).unwrap_or(i64::MAX);
            loop {
                let now = faas_common::clock::now_ms();
                for (version, left_ms) in this.registry.warm_holds(now, grace) {
                    this.hold(&version, Duration::from_millis(left_ms.unsigned_abs()));
                }
                tokio::select! {
                    _ = shutdown.clone().wait() => return,
                    _ = tokio::time::sleep(HOLD_REFRESH) => {}
                }
            }
        });
    }

    /// Runs a registry write on a blocking thread: it waits for the database's disk write,
    /// which must not hold up a runtime worker, and it runs to the end even when the caller
    /// goes away, so the database and the registry never disagree.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, Status> {
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || op(&registry))
            .await
            .map_err(|e| Status::internal(format!("the registry write failed: {e}")))?
            .map_err(|e| registry_status(&e))
    }

    /// Tells the scheduler that `name` was deleted, in the background: the delete is done
    /// whatever it answers (a scheduler that does not hear of it keeps the containers until
    /// its keep-alive removes them).
    fn retire(&self, name: &str) {
        self.tell_scheduler(name, None);
    }

    /// Tells the scheduler to hold `name`'s idle containers for `hold` (see [`Self::retire`]
    /// for a failure to tell it).
    fn hold(&self, name: &str, hold: Duration) {
        self.tell_scheduler(name, Some(hold));
    }

    fn tell_scheduler(&self, name: &str, hold: Option<Duration>) {
        let Some(mut client) = self.scheduler.clone() else {
            return;
        };
        let name = name.to_string();
        tokio::spawn(async move {
            let Some(hold) = hold else {
                // A hold outlives a retire (holds are by name): end it first, so a function
                // deployed again under this name is not held.
                let mut end = Request::new(HoldFunctionRequest {
                    function_name: name.clone(),
                    hold_ms: 0,
                });
                end.set_timeout(RETIRE_TIMEOUT);
                if let Err(e) = client.hold_function(end).await {
                    tracing::debug!(function = %name, error = %e.message(), "could not end a hold");
                }
                let mut request = Request::new(RetireFunctionRequest {
                    function_name: name.clone(),
                });
                request.set_timeout(RETIRE_TIMEOUT);
                if let Err(e) = client.retire_function(request).await {
                    tracing::warn!(function = %name, code = ?e.code(), error = %e.message(), "the scheduler was not told of the deleted function; its containers stay until their keep-alive ends");
                }
                return;
            };
            let mut request = Request::new(HoldFunctionRequest {
                function_name: name.clone(),
                hold_ms: i64::try_from(hold.as_millis()).unwrap_or(i64::MAX),
            });
            request.set_timeout(RETIRE_TIMEOUT);
            match client.hold_function(request).await {
                Ok(reply) => {
                    tracing::info!(version = %name, hold_ms = hold.as_millis() as u64, containers = reply.into_inner().containers, "holding the version's containers warm for a rollback")
                }
                Err(e) => {
                    tracing::warn!(version = %name, code = ?e.code(), error = %e.message(), "the scheduler was not asked to hold the version warm; a rollback may meet cold starts")
                }
            }
        });
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn function_logs(
        &self,
        request: Request<admin::FunctionLogsRequest>,
    ) -> Result<Response<admin::FunctionLogsReply>, Status> {
        let reply = crate::api::logs::function_logs(
            &self.registry,
            self.scheduler.clone(),
            &self.auth,
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(reply))
    }

    async fn list_nodes(
        &self,
        request: Request<admin::ListNodesRequest>,
    ) -> Result<Response<admin::ListNodesReply>, Status> {
        let reply = crate::api::cluster::list_nodes(
            self.scheduler.clone(),
            &self.auth,
            request.into_inner(),
            faas_common::clock::now_ms(),
        )
        .await?;
        Ok(Response::new(reply))
    }

    async fn deploy_function(
        &self,
        request: Request<admin::DeployFunctionRequest>,
    ) -> Result<Response<admin::DeployFunctionReply>, Status> {
        let spec = request.into_inner().function.ok_or_else(|| {
            Status::invalid_argument(
                "the request has no function: set DeployFunctionRequest.function",
            )
        })?;
        let now_ms = faas_common::clock::now_ms();
        let deployed = self
            .write(move |registry| registry.deploy(spec_from_admin(spec), now_ms))
            .await?;
        let f = &deployed.function;
        tracing::info!(
            function = %f.name,
            revision = f.revision,
            handler = %f.handler,
            memory_bytes = f.memory_bytes,
            timeout_ms = f.timeout_ms,
            created = deployed.created,
            "function deployed"
        );
        Ok(Response::new(admin::DeployFunctionReply {
            function: Some(admin_record(f)),
            created: deployed.created,
        }))
    }

    async fn get_function(
        &self,
        request: Request<admin::GetFunctionRequest>,
    ) -> Result<Response<admin::GetFunctionReply>, Status> {
        let f = self
            .registry
            .get(&request.into_inner().name)
            .map_err(|e| registry_status(&e))?;
        Ok(Response::new(admin::GetFunctionReply {
            function: Some(admin_record(&f)),
        }))
    }

    async fn list_functions(
        &self,
        _request: Request<admin::ListFunctionsRequest>,
    ) -> Result<Response<admin::ListFunctionsReply>, Status> {
        let functions = self
            .registry
            .list()
            .iter()
            .map(|f| admin_record(f))
            .collect();
        Ok(Response::new(admin::ListFunctionsReply { functions }))
    }

    async fn delete_function(
        &self,
        request: Request<admin::DeleteFunctionRequest>,
    ) -> Result<Response<admin::DeleteFunctionReply>, Status> {
        let name = request.into_inner().name;
        let versions = self.registry.versions(&name).unwrap_or_default();
        let f = self.write(move |registry| registry.delete(&name)).await?;
        tracing::info!(function = %f.name, revision = f.revision, versions = versions.len(), "function deleted");
        self.retire(&f.name);
        for v in versions {
            self.retire(&v.name);
        }
        Ok(Response::new(admin::DeleteFunctionReply {}))
    }

    async fn publish_version(
        &self,
        request: Request<admin::PublishVersionRequest>,
    ) -> Result<Response<admin::PublishVersionReply>, Status> {
        let req = request.into_inner();
        let now_ms = faas_common::clock::now_ms();
        let name = req.name.clone();
        let spec = req.spec.map(spec_from_admin);
        let expect = (req.version > 0).then_some(req.version);
        let (version, created) = self
            .write(move |r| r.publish(&req.name, spec, expect, now_ms))
            .await?;
        if created {
            tracing::info!(function = %name, version = version.revision, handler = %version.handler, "version published");
        }
        Ok(Response::new(admin::PublishVersionReply {
            version: Some(version_record(&name, &version)),
            created,
        }))
    }

    async fn list_versions(
        &self,
        request: Request<admin::ListVersionsRequest>,
    ) -> Result<Response<admin::ListVersionsReply>, Status> {
        let name = request.into_inner().name;
        let versions = self
            .registry
            .versions(&name)
            .map_err(|e| registry_status(&e))?
            .iter()
            .map(|v| version_record(&name, v))
            .collect();
        Ok(Response::new(admin::ListVersionsReply { versions }))
    }

    async fn delete_version(
        &self,
        request: Request<admin::DeleteVersionRequest>,
    ) -> Result<Response<admin::DeleteVersionReply>, Status> {
        let req = request.into_inner();
        let name = req.name.clone();
        let gone = self
            .write(move |r| r.delete_version(&req.name, req.version))
            .await?;
        tracing::info!(function = %name, version = gone.revision, "version deleted");
        self.retire(&gone.name);
        Ok(Response::new(admin::DeleteVersionReply {}))
    }

    async fn set_alias(
        &self,
        request: Request<admin::SetAliasRequest>,
    ) -> Result<Response<admin::SetAliasReply>, Status> {
        let req = request.into_inner();
        let now_ms = faas_common::clock::now_ms();
        let targets = weights_from_admin(req.targets);
        let change = self
            .write(move |r| r.set_alias(&req.function, &req.alias, targets, now_ms))
            .await?;
        self.moved(&change, "alias set");
        Ok(Response::new(admin::SetAliasReply {
            alias: Some(alias_record(&change.alias)),
            created: change.created,
        }))
    }

    async fn delete_alias(
        &self,
        request: Request<admin::DeleteAliasRequest>,
    ) -> Result<Response<admin::DeleteAliasReply>, Status> {
        let req = request.into_inner();
        let gone = self
            .write(move |r| r.delete_alias(&req.function, &req.alias))
            .await?;
        tracing::info!(function = %gone.function, alias = %gone.name, "alias deleted");
        let change = AliasChange {
            left: gone.targets.iter().map(|t| t.version).collect(),
            alias: gone,
            created: false,
        };
        self.hold_left(&change);
        Ok(Response::new(admin::DeleteAliasReply {}))
    }

    async fn rollback_alias(
        &self,
        request: Request<admin::RollbackAliasRequest>,
    ) -> Result<Response<admin::RollbackAliasReply>, Status> {
        let req = request.into_inner();
        let now_ms = faas_common::clock::now_ms();
        let started = faas_common::clock::instant();
        let change = self
            .write(move |r| r.rollback(&req.function, &req.alias, now_ms))
            .await?;
        let took_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.moved(&change, "alias rolled back");
        Ok(Response::new(admin::RollbackAliasReply {
            alias: Some(alias_record(&change.alias)),
            took_us,
        }))
    }

    async fn set_routes(
        &self,
        request: Request<admin::SetRoutesRequest>,
    ) -> Result<Response<admin::SetRoutesReply>, Status> {
        let req = request.into_inner();
        let policy =
            policy_from_admin(&req.function, req.routes).map_err(|e| registry_status(&e))?;
        let function = req.function.clone();
        let set = policy.is_some();
        self.write(move |r| r.set_policy(&req.function, policy))
            .await?;
        tracing::info!(function = %function, policy = set, "routes set");
        Ok(Response::new(admin::SetRoutesReply {}))
    }

    async fn set_async_retry(
        &self,
        request: Request<admin::SetAsyncRetryRequest>,
    ) -> Result<Response<admin::SetAsyncRetryReply>, Status> {
        let runner = self
            .queue
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this server has no asynchronous queue"))?;
        admin_queue::set_retry(runner, &self.registry, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn describe_function(
        &self,
        request: Request<admin::DescribeFunctionRequest>,
    ) -> Result<Response<admin::DescribeFunctionReply>, Status> {
        let name = request.into_inner().name;
        let status = |e: RegistryError| registry_status(&e);
        let f = self.registry.get(&name).map_err(status)?;
        if f.name != name || name.contains(':') {
            return Err(Status::invalid_argument(format!(
                "describe takes a function's name, not a version or alias: give {}",
                faas_common::text::clip(name.split(':').next().unwrap_or(""))
            )));
        }
        let versions = self.registry.versions(&name).map_err(status)?;
        let aliases = self.registry.aliases(&name).map_err(status)?;
        let now = faas_common::clock::now_ms();
        let queue = match &self.queue {
            Some(runner) => Some(admin_queue::status(runner, &name).await),
            None => None,
        };
        Ok(Response::new(admin::DescribeFunctionReply {
            queue,
            function: Some(admin_record(&f)),
            versions: versions.iter().map(|v| version_record(&name, v)).collect(),
            aliases: aliases.iter().map(alias_record).collect(),
            routes: self.registry.policy(&name).as_ref().map(policy_to_admin),
            targets: self
                .router
                .status(&name)
                .iter()
                .map(|s| target_status(s, now))
                .collect(),
        }))
    }
}

impl AdminService {
    /// Logs an alias change and holds the versions it left warm.
    fn moved(&self, change: &AliasChange, what: &'static str) {
        let a = &change.alias;
        tracing::info!(
            function = %a.function,
            alias = %a.name,
            targets = %show_weights(&a.targets),
            previous = %show_weights(&a.previous),
            "{what}"
        );
        self.hold_left(change);
    }

    fn hold_left(&self, change: &AliasChange) {
        let a = &change.alias;
        for v in self
            .registry
            .unreferenced_versions(&a.function, &change.left)
        {
            self.hold(&version_name(&a.function, v), self.version_grace);
        }
    }
}
