//! The engine: everything `init`, `sidecar` and `exec --config` do the same way whatever the
//! provider (docs/architecture.md, "One data flow"). It reads the config once, groups its
//! volumes into units (one session each, [`crate::config::volumes`]), opens each unit's
//! session through the provider seam ([`crate::provider::Session`]), adopts what
//! `--state-dir` recorded, and writes what the session renders through the volume.
//!
//! Nothing here names a provider: a new provider plugs into [`crate::provider`] and gets
//! state, reload, several volumes, metrics and notification from this module unchanged.

pub mod init;
pub mod notify;
pub mod sidecar;
pub mod state;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, Spec, VaultEnv};
use crate::error::Error;
use crate::provider::{Session, Settings};
use crate::volume::{Volume, VolumeSet};

use state::StateDir;

/// How often static secrets are polled when neither the flag nor the config says.
pub const DEFAULT_POLL: Duration = Duration::from_secs(300);

/// The one place a command's async runtime is built: one thread, timers and I/O.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))
}

/// What `init` and `sidecar` share from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub dir: PathBuf,
    pub allow_disk: bool,
    /// `--volume NAME=DIR`: where each volume the config names is written.
    pub volumes: Vec<(String, PathBuf)>,
    /// Where sessions are kept for the next process (`--state-dir`).
    pub state_dir: Option<StateDir>,
    /// `--poll-interval`, over the config's.
    pub poll_interval: Option<Duration>,
    /// Token path, Vault pins, AWS environment, revocation grace (poll is set per unit).
    pub settings: Settings,
}

impl Options {
    pub fn layout(&self) -> config::volumes::Layout {
        config::volumes::Layout {
            dir: self.dir.clone(),
            volumes: self.volumes.clone(),
            token_path: self.settings.token_path.clone(),
        }
    }

    /// The settings of a unit with this spec: the poll interval from the flag, else the
    /// config, else [`DEFAULT_POLL`].
    pub fn settings_for(&self, spec: &Spec) -> Settings {
        Settings {
            poll: self
                .poll_interval
                .or(spec.sidecar.poll_interval)
                .unwrap_or(DEFAULT_POLL),
            ..self.settings.clone()
        }
    }
}

/// A unit ready to run: its spec, its volumes, its session and where its state is kept.
pub struct Unit {
    pub spec: Spec,
    /// The members' volume names (None: `--dir`), for reloads.
    pub members: Vec<Option<String>>,
    pub volume: VolumeSet,
    pub session: Session,
    pub state_dir: Option<StateDir>,
}

/// Reads the config once and prepares every unit it describes: volumes checked (tmpfs,
/// ownership), sessions opened (pins checked), state directories assigned (`DIR/unit-N` when
/// there are several units). Returns the config's text too, to recognise a reload that
/// changes nothing.
pub fn prepare(opts: &Options, keep_previous: bool) -> Result<(String, Vec<Unit>), Error> {
    let text = config::read_bounded(&opts.config)?;
    check_admitted(opts, &text).map_err(Error::Unfit)?;
    let units = config::volumes::load_units(
        &opts.config,
        &text,
        &VaultEnv::from_process(),
        &opts.layout(),
    )?;
    let several = units.len() > 1;
    let mut prepared = Vec::new();
    for (i, unit) in units.into_iter().enumerate() {
        let volumes = unit
            .dirs
            .iter()
            .map(|d| Volume::new(d, opts.allow_disk))
            .collect();
        let views = unit
            .views
            .iter()
            .map(|(view, dir, member)| crate::volume::view::View {
                volume: Volume::new(dir, opts.allow_disk),
                member: *member,
                files: view.files.clone(),
            })
            .collect();
        let volume = VolumeSet::new(volumes).with_views(views);
        let volume = if keep_previous {
            volume.keeping_previous()
        } else {
            volume
        };
        volume.check_filesystem()?;
        crate::volume::check_ownership(&unit.spec.provider.files()).map_err(Error::Unfit)?;
        let session = Session::open(&unit.spec.provider, &opts.settings_for(&unit.spec))?;
        let state_dir = match (&opts.state_dir, several) {
            // Each unit keeps its own session for the next process.
            (Some(sd), true) => Some(sd.unit(i)?),
            (sd, _) => sd.clone(),
        };
        if let Some(sd) = &opts.state_dir {
            // The command line checked --dir; a --volume directory is the app's as well.
            for dir in &unit.dirs {
                sd.refuse_inside(dir, "the volume directory")?;
            }
        }
        prepared.push(Unit {
            spec: unit.spec,
            members: unit.volumes,
            volume,
            session,
            state_dir,
        });
    }
    Ok((text, prepared))
}

/// Err (what is not admitted) when `--admitted` is given and a volume of the config at
/// `text` is not among its pins ([`crate::provider::ProviderSpec::pin`]). Each volume's pin is
/// taken from what its source says (the pod's annotations, a converted class) with only the
/// Vault address (and the AWS region) from the environment, as the webhook computed it: the
/// rest of the environment (a CA path it set) is fixed for the pod's life, what the sources
/// say is not.
pub fn check_admitted(opts: &Options, text: &str) -> Result<(), String> {
    if opts.settings.admitted.is_none() {
        return Ok(());
    }
    let process = VaultEnv::from_process();
    let env = VaultEnv {
        addr: process.addr,
        aws_region: process.aws_region,
        ..VaultEnv::default()
    };
    let sources = config::volumes::sources(&opts.config, text, &env).map_err(|e| e.to_string())?;
    sources
        .iter()
        .try_for_each(|s| s.spec.provider.check_admitted(&opts.settings))
}

/// Hands what `--state-dir` recorded to the session; true when the files on disk are still
/// its render.
pub async fn adopt(unit: &mut Unit, deadline: std::time::Instant) -> bool {
    let Some(sd) = &unit.state_dir else {
        return false;
    };
    let dir = sd.path().display().to_string();
    match sd.load() {
        state::Loaded::Missing => {
            tracing::debug!(state_dir = %dir, "no state recorded yet");
            false
        }
        state::Loaded::Unusable(reason) => {
            tracing::warn!(state_dir = %dir, file = state::FILE_NAME, reason = %reason, "ignoring the recorded state; starting afresh");
            false
        }
        state::Loaded::Found(bytes) => {
            let on_disk = crate::fingerprint::on_disk(&unit.volume);
            unit.session
                .adopt(bytes.expose(), &dir, on_disk, deadline)
                .await
        }
    }
}

/// Records the session's state when it changed.
pub fn save_state(unit: &mut Unit) {
    if let Some(bytes) = unit.session.take_state() {
        if let Some(sd) = &unit.state_dir {
            sd.save_or_warn(&bytes);
        }
    }
}
