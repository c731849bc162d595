//! The graph of pending work: every waiting and running task, with what it
//! waits on (a task here, or one of another robot) and what it is queued
//! behind (the task before it in its service's list). Built on demand from
//! the services' queues; nothing is kept for it on the task path.

use std::sync::Arc;

use uuid::Uuid;

use super::Robot;
use crate::service::Service;
use crate::task::{RemoteTaskRef, Task, WaitTarget};
use crate::waitgraph::{blocker, describe};

/// A service with pending work.
#[derive(Debug)]
pub struct PendingService {
    pub service: Arc<Service>,
    pub running: Option<Arc<Task>>,
    /// In the order they will run.
    pub waiting: Vec<Arc<Task>>,
}

/// Why one task cannot go on before another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// `from`'s action waits on the result of `to`.
    WaitsOn,
    /// `from` runs after `to`, in the same service's task list.
    QueuedBehind,
}

/// One edge: `from` cannot go on before `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEdge {
    pub from: Uuid,
    pub to: Uuid,
    pub kind: EdgeKind,
}

/// The pending work of a robot.
#[derive(Debug, Default)]
pub struct PendingGraph {
    pub services: Vec<PendingService>,
    /// Tasks of other robots that tasks here wait on.
    pub remote: Vec<Arc<RemoteTaskRef>>,
    pub edges: Vec<PendingEdge>,
}

impl Robot {
    /// The graph of pending work now: services with a running or waiting
    /// task, ordered by name. One pass over the services.
    pub fn pending_graph(&self) -> PendingGraph {
        let services: Vec<Arc<Service>> = self.services().by_guid.values().cloned().collect();
        let mut graph = PendingGraph::default();
        for svc in services {
            let (running, waiting) = {
                let inner = svc.lock();
                if inner.current.is_none() && inner.queue.is_empty() {
                    continue;
                }
                let waiting: Vec<Arc<Task>> = inner.queue.iter().cloned().collect();
                (inner.current.clone(), waiting)
            };
            let mut before = running.as_ref().map(|t| t.guid);
            for t in &waiting {
                if let Some(b) = before {
                    graph.edges.push(PendingEdge {
                        from: t.guid,
                        to: b,
                        kind: EdgeKind::QueuedBehind,
                    });
                }
                before = Some(t.guid);
            }
            if let Some(r) = &running {
                match r.waiting_on() {
                    Some(WaitTarget::Local(target)) => graph.edges.push(PendingEdge {
                        from: r.guid,
                        to: target.guid,
                        kind: EdgeKind::WaitsOn,
                    }),
                    Some(WaitTarget::Remote(target)) => {
                        graph.edges.push(PendingEdge {
                            from: r.guid,
                            to: target.guid,
                            kind: EdgeKind::WaitsOn,
                        });
                        graph.remote.push(target);
                    }
                    None => {}
                }
            }
            graph.services.push(PendingService {
                service: svc,
                running,
                waiting,
            });
        }
        graph
            .services
            .sort_by(|a, b| a.service.name.cmp(&b.service.name));
        graph
    }
}

/// One task of a chain of waits, as [`Robot::blocking_chain`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub guid: Uuid,
    /// `` `action` of service `name` ``.
    pub describe: String,
}

/// What blocks a task, as far as this robot can see.
#[derive(Debug, Clone, Default)]
pub struct BlockingChain {
    /// The task asked about, then each task that blocks the one before it:
    /// the task its action waits on, or the running task of its service.
    pub links: Vec<ChainLink>,
    /// The chain goes on on another robot: the last link waits on this task.
    pub remote: Option<Arc<RemoteTaskRef>>,
}

impl Robot {
    /// The chain of tasks blocking task `guid` (live: waiting or running)
    /// here, and the task of another robot it leads to, if any; stops at a
    /// task seen twice (a cycle within the robot, which its waits already
    /// refuse) and after 10,000 links.
    pub fn blocking_chain(&self, svc: &Service, guid: Uuid) -> Option<BlockingChain> {
        let mut current = self.live_task(svc, guid)?;
        let mut chain = BlockingChain::default();
        for _ in 0..10_000 {
            if chain.links.iter().any(|l| l.guid == current.guid) {
                break;
            }
            chain.links.push(ChainLink {
                guid: current.guid,
                describe: describe(&current),
            });
            match blocker(&current) {
                Some(WaitTarget::Local(next)) => current = next,
                Some(WaitTarget::Remote(r)) => {
                    chain.remote = Some(r);
                    break;
                }
                None => break,
            }
        }
        Some(chain)
    }
}
