//! A fleet as operators run it: an etcd cluster, one `control_plane`
//! gateway (admin API only) and several `data_plane` gateways (traffic only),
//! every one listing all etcd members as its endpoints.

use std::time::Duration;

use crate::admin::AdminClient;
use crate::cluster::EtcdCluster;
use crate::gateway::{Gateway, GatewayOptions};
use crate::load::http_get;
use crate::wait::wait_until;

/// An etcd cluster, a control plane and data planes sharing one prefix.
#[derive(Debug)]
pub struct Fleet {
    pub etcd: EtcdCluster,
    pub control: Gateway,
    /// With their status listener open.
    pub data: Vec<Gateway>,
}

impl Fleet {
    /// A 3-member etcd cluster, one control plane and `data_planes` data planes.
    pub async fn start(data_planes: usize) -> crate::Result<Fleet> {
        Fleet::start_with(data_planes, GatewayOptions::default()).await
    }

    /// As [`Fleet::start`]; every gateway gets `base` with its role (and,
    /// for the data planes, the status listener) set.
    pub async fn start_with(data_planes: usize, base: GatewayOptions) -> crate::Result<Fleet> {
        let etcd = EtcdCluster::start(3).await?;
        let endpoints = etcd.endpoints();
        let control = Gateway::start_on(
            &endpoints,
            GatewayOptions {
                role: "control_plane",
                ..base.clone()
            },
        )
        .await?;
        let mut data = Vec::with_capacity(data_planes);
        for _ in 0..data_planes {
            let opts = GatewayOptions {
                role: "data_plane",
                status: true,
                ..base.clone()
            };
            data.push(Gateway::start_on(&endpoints, opts).await?);
        }
        Ok(Fleet {
            etcd,
            control,
            data,
        })
    }

    /// The control plane's admin API.
    pub fn admin(&self) -> AdminClient {
        self.control.admin()
    }

    /// Waits until every data plane answers `GET path` on its plain HTTP
    /// listener with `status`.
    pub async fn until_all_answer(
        &self,
        path: &str,
        status: u16,
        timeout: Duration,
    ) -> crate::Result<()> {
        for (n, gw) in self.data.iter().enumerate() {
            wait_until(
                &format!("data plane {n} to answer {path} with {status}"),
                timeout,
                || async {
                    matches!(http_get(gw.http_addr(), path).await, Ok((s, _)) if s == status)
                },
            )
            .await?;
        }
        Ok(())
    }
}
