//! The runtime's own work on its containers: connecting, the create body (limits, network,
//! labels, security), launching and waiting until the container listens, sampling stats,
//! inspecting state, stopping and removing.

use super::*;

impl DockerRuntime {
    /// Connects to the local Docker daemon, makes sure the network exists and removes this
    /// node's containers left by an earlier run.
    pub async fn connect(options: DockerOptions) -> Result<DockerRuntime, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| unavailable("cannot reach the daemon", e))?;
        docker
            .ping()
            .await
            .map_err(|e| unavailable("the daemon does not answer", e))?;
        let (network_id, created_network) =
            ensure_network(&docker, &options.network, &options.instance)
                .await
                .map_err(|e| {
                    unavailable(&format!("cannot create network {}", options.network), e)
                })?;
        let orphans = remove_labelled(&docker, &Self::own_filters(&options)).await;
        if orphans > 0 {
            tracing::warn!(
                orphans,
                node = %options.node_id,
                "removed function containers left by an earlier run"
            );
        }
        tracing::info!(image = %options.image, network = %options.network, "docker runtime ready");
        Ok(DockerRuntime {
            docker,
            options,
            containers: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            network_id,
            created_network,
        })
    }

    pub(super) fn own_filters(options: &DockerOptions) -> Vec<String> {
        vec![
            format!("{}={}", labels::ROLE, labels::ROLE_FUNCTION),
            format!("{}={}", labels::INSTANCE, options.instance),
            format!("{}={}", labels::NODE, options.node_id),
        ]
    }

    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<DockerContainer>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, id: &str) -> Option<Arc<DockerContainer>> {
        self.table().get(id).cloned()
    }

    /// The Docker id of a container (for diagnostics and tests).
    pub fn docker_id(&self, id: &str) -> Option<String> {
        Some(self.get(id)?.docker_id.clone())
    }

    /// The memory, swap, CPU and pids limits of a container with `memory_bytes` of memory:
    /// swap equal to the memory (no swap, a hard limit), the CPU quota proportional to it.
    pub(super) fn limits(&self, memory_bytes: u64) -> ContainerUpdateBody {
        let memory = i64::try_from(memory_bytes).unwrap_or(i64::MAX);
        ContainerUpdateBody {
            memory: Some(memory),
            memory_swap: Some(memory),
            cpu_period: Some(CPU_PERIOD_MICROS),
            cpu_quota: Some(cpu_quota_micros(memory_bytes, self.options.cpus_per_gib)),
            pids_limit: Some(self.options.pids_limit),
            ..Default::default()
        }
    }

    /// The container to create: for `spec`'s function (of an image function when `image`
    /// is given), or unbound (a warm pool container) when `None`.
    pub(super) fn body(
        &self,
        id: &str,
        spec: Option<&ContainerSpec>,
        image: Option<&ImageRun>,
    ) -> ContainerCreateBody {
        let o = &self.options;
        let mut cmd = vec![
            "--host".to_string(),
            "0.0.0.0".to_string(),
            "--port".to_string(),
            o.port.to_string(),
        ];
        let mut labels = HashMap::from([
            (labels::ROLE.to_string(), labels::ROLE_FUNCTION.to_string()),
            (labels::INSTANCE.to_string(), o.instance.clone()),
            (labels::NODE.to_string(), o.node_id.clone()),
            (labels::CONTAINER.to_string(), id.to_string()),
        ]);
        let memory_bytes = match spec {
            Some(spec) => {
                let (what, runs) = match image {
                    Some(_) => ("--bundle", docker_bundle::BUNDLE.to_string()),
                    None => ("--handler", spec.handler.clone()),
                };
                cmd.extend([
                    "--function-name".to_string(),
                    spec.function_name.clone(),
                    what.to_string(),
                    runs,
                    "--memory-bytes".to_string(),
                    spec.memory_bytes.to_string(),
                ]);
                if spec.timeout_ms > 0 {
                    cmd.push("--timeout-ms".to_string());
                    cmd.push(spec.timeout_ms.to_string());
                }
                labels.insert(labels::FUNCTION.to_string(), spec.function_name.clone());
                spec.memory_bytes
            }
            None => {
                cmd.push("--unbound".to_string());
                labels.insert(labels::POOL.to_string(), "true".to_string());
                UNBOUND_MEMORY_BYTES
            }
        };
        // The cgroup limit and the kernel's OOM killer act here, not the emulation.
        cmd.extend(["--emulate-memory-limit".to_string(), "false".to_string()]);
        cmd.extend(faas_common::logging::child_args());
        let limits = self.limits(memory_bytes);
        let mut body = ContainerCreateBody {
            image: Some(o.image.clone()),
            cmd: Some(cmd),
            user: Some(o.user.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                memory: limits.memory,
                memory_swap: limits.memory_swap,
                cpu_period: limits.cpu_period,
                cpu_quota: limits.cpu_quota,
                pids_limit: limits.pids_limit,
                readonly_rootfs: Some(true),
                security_opt: Some(vec!["no-new-privileges".to_string()]),
                cap_drop: Some(vec!["ALL".to_string()]),
                network_mode: Some(self.network_id.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.network_id.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        if let Some(image) = image {
            image.apply(&mut body);
        }
        body
    }

    /// Creates and starts the container `body` under `name`, waits up to `ready` until it
    /// listens and records it as `id`; `function` names it in errors and logs.
    pub(super) async fn launch(
        &self,
        id: String,
        name: String,
        body: ContainerCreateBody,
        function: &str,
        memory_limit: u64,
        ready: Duration,
    ) -> Result<ContainerHandle, RuntimeError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RuntimeError::Unavailable(
                "the node service is shutting down".into(),
            ));
        }
        let image = body.image.clone().unwrap_or_default();
        let start_failed = |message: String| RuntimeError::StartFailed {
            function: function.to_string(),
            message,
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| match e {
                e if is_not_found(&e) && image == self.options.image => {
                    RuntimeError::Unavailable(format!(
                        "docker: image {image} not found: build it with deploy/build-images.sh \
                         ({e})"
                    ))
                }
                e => start_failed(format!("docker create: {e}")),
            })?;
        let docker_id = created.id;
        if let Err(e) = self.docker.start_container(&docker_id, None).await {
            force_remove(&self.docker, &docker_id).await;
            return Err(start_failed(format!("docker start: {e}")));
        }
        let Some(ip) = container_ip(&self.docker, &docker_id, &self.options.network).await else {
            force_remove(&self.docker, &docker_id).await;
            return Err(start_failed(format!(
                "the container has no address on network {}",
                self.options.network
            )));
        };
        let address = format!("{ip}:{}", self.options.port);
        if let Err(not_listening) = self.wait_listening(&docker_id, &address, ready).await {
            let error = match not_listening {
                NotListening::Exited(message) => start_failed(message),
                NotListening::Silent(message) => RuntimeError::NotReady {
                    function: function.to_string(),
                    message,
                },
            };
            force_remove(&self.docker, &docker_id).await;
            return Err(error);
        }
        let container = Arc::new(DockerContainer {
            docker_id: docker_id.clone(),
            memory_limit: AtomicU64::new(memory_limit),
            cpu: Mutex::new(None),
        });
        self.table().insert(id.clone(), container);
        if self.closed.load(Ordering::Acquire) {
            // Shutdown may have drained the table before this insert.
            self.table().remove(&id);
            force_remove(&self.docker, &docker_id).await;
            return Err(RuntimeError::Unavailable(
                "the node service is shutting down".into(),
            ));
        }
        tracing::debug!(container = %id, docker = %docker_id, %address, %function, "container started");
        Ok(ContainerHandle { id, address })
    }

    /// A container name: the instance, the node, `what` (the function or `pool`) and the
    /// start of the id.
    pub(super) fn name(&self, what: &str, id: &str) -> String {
        format!(
            "minifaas-{}-{}-{}-{}",
            name_part(&self.options.instance),
            name_part(&self.options.node_id),
            name_part(what),
            &id[..8]
        )
    }

    /// Waits up to `ready` until the container's service accepts connections, or the
    /// container stops (then says why, from its logs).
    pub(super) async fn wait_listening(
        &self,
        docker_id: &str,
        addr: &str,
        ready: Duration,
    ) -> Result<(), NotListening> {
        let deadline = faas_common::clock::instant() + ready;
        let mut polls = 0u32;
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            if let Ok(Ok(_)) = attempt {
                return Ok(());
            }
            polls += 1;
            if polls.is_multiple_of(20) {
                let state = self
                    .docker
                    .inspect_container(docker_id, None)
                    .await
                    .ok()
                    .and_then(|i| i.state);
                if let Some(state) = state
                    && state.running == Some(false)
                {
                    let reason = match state.error.filter(|e| !e.is_empty()) {
                        Some(error) => Some(error),
                        None => docker_bundle::exit_reason(&self.docker, docker_id).await,
                    };
                    return Err(NotListening::Exited(format!(
                        "the container exited with code {} before listening: {}",
                        state.exit_code.unwrap_or(-1),
                        reason
                            .as_deref()
                            .unwrap_or("it logged no reason (see `docker logs`)")
                    )));
                }
            }
            if faas_common::clock::instant() >= deadline {
                return Err(NotListening::Silent(format!(
                    "nothing listened on {addr} within {} ms",
                    ready.as_millis()
                )));
            }
            tokio::time::sleep(READY_STEP).await;
        }
    }

    /// One container's figures. A running container whose figures cannot be read is
    /// reported alive with what is known (zero usage), never left out; when neither the
    /// stats nor an inspect answer, the daemon cannot say whether it runs: an error.
    pub(super) async fn sample(
        &self,
        id: String,
        c: Arc<DockerContainer>,
    ) -> Result<ContainerUsage, RuntimeError> {
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = self
            .docker
            .stats(&c.docker_id, Some(options))
            .next()
            .await
            .and_then(Result::ok);
        let memory = stats.as_ref().and_then(memory_used);
        let alive = match memory {
            Some(_) => true,
            // A stopped container has no figures: ask whether it still runs.
            None => match self.inspect_state(&c.docker_id).await {
                Ok(state) => !matches!(
                    state,
                    Liveness::Exited | Liveness::OutOfMemory | Liveness::Unknown
                ),
                Err(e) => {
                    return Err(unavailable(
                        &format!("cannot tell whether container {id} runs"),
                        e,
                    ));
                }
            },
        };
        let cpu_pct = match stats.as_ref().and_then(cpu_sample) {
            Some((total, system, online)) => {
                let mut last = c.cpu.lock().unwrap_or_else(|e| e.into_inner());
                let pct = last
                    .map(|prev| cpu_percent(prev, (total, system), online))
                    .unwrap_or(0.0);
                *last = Some((total, system));
                pct
            }
            None => 0.0,
        };
        Ok(ContainerUsage {
            id,
            memory_bytes: memory.unwrap_or(0),
            cpu_pct,
            memory_limit_bytes: c.memory_limit.load(Ordering::Relaxed),
            alive,
        })
    }

    /// One inspect: running, exited, killed for memory, or gone; an error when the daemon
    /// does not answer.
    pub(super) async fn inspect_state(&self, docker_id: &str) -> Result<Liveness, DockerError> {
        match self.docker.inspect_container(docker_id, None).await {
            Ok(inspect) => {
                let Some(state) = inspect.state else {
                    return Ok(Liveness::Unknown);
                };
                Ok(if state.running == Some(true) {
                    Liveness::Running
                } else if state.oom_killed == Some(true) || state.exit_code == Some(137) {
                    Liveness::OutOfMemory
                } else {
                    Liveness::Exited
                })
            }
            Err(e) if is_not_found(&e) => Ok(Liveness::Unknown),
            Err(e) => Err(e),
        }
    }

    /// [`Self::inspect_state`], saying nothing worse than what is known when the daemon does
    /// not answer (running).
    pub(super) async fn probe_state(&self, docker_id: &str) -> Liveness {
        self.inspect_state(docker_id)
            .await
            .unwrap_or(Liveness::Running)
    }

    pub(super) async fn stop_and_remove(&self, docker_id: &str) {
        let options = StopContainerOptionsBuilder::new()
            .t(STOP_GRACE_SECS)
            .build();
        if let Err(e) = self.docker.stop_container(docker_id, Some(options)).await
            && !is_not_found(&e)
        {
            tracing::debug!(container = docker_id, error = %e, "stop failed; removing by force");
        }
        force_remove(&self.docker, docker_id).await;
    }
}
