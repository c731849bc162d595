//! Pausing a service: no task starts while the robot does something to it
//! that only its single consumer may do (move it to another template version,
//! hand it new data); tasks still queue meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Robot;
use crate::error::CoreError;
use crate::service::{Service, ServiceStatus};

impl Robot {
    /// Stops `svc` from starting tasks and waits for its running task to end,
    /// both within `bound`. On success the caller owns the service until
    /// [`Robot::resume`].
    pub(crate) async fn pause(
        &self,
        svc: &Arc<Service>,
        why: &str,
        bound: Duration,
    ) -> Result<(), CoreError> {
        let deadline = Instant::now() + bound;
        loop {
            {
                let mut inner = svc.lock();
                match &inner.status {
                    ServiceStatus::Ok | ServiceStatus::Invalid(_) => {
                        inner.status = ServiceStatus::Paused(why.to_owned());
                        break;
                    }
                    ServiceStatus::Deleting => {
                        return Err(CoreError::ServiceDeleting(svc.name.clone()))
                    }
                    ServiceStatus::Creating | ServiceStatus::Paused(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(CoreError::ServiceBusy(svc.name.clone()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !self.wait_idle(svc, left).await {
            self.resume(svc);
            return Err(CoreError::ServiceBusy(svc.name.clone()));
        }
        Ok(())
    }

    /// Lets a paused service run its tasks again.
    pub(crate) fn resume(&self, svc: &Arc<Service>) {
        {
            let mut inner = svc.lock();
            if matches!(inner.status, ServiceStatus::Paused(_)) {
                inner.status = ServiceStatus::Ok;
            }
        }
        self.kick(svc);
    }
}
