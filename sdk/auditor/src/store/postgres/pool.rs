//! Connections of the PostgreSQL store: an `r2d2` pool of synchronous `postgres` clients, each
//! with its own cache of prepared statements (every statement of the store is parsed once per
//! connection, then only bound and executed), over plain TCP or TLS (rustls with the ring
//! provider, the server's certificate verified against given or system roots).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::types::ToSql;
use postgres::{GenericClient, NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// How the store talks to the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PostgresTls {
    /// Plain TCP or a Unix socket: loopback, or a private network the operator trusts.
    #[default]
    Disabled,
    /// TLS is required; the server's certificate must chain to `root_certificates` (a PEM file
    /// of CA certificates) or, when `None`, to the system's roots, and name the URL's host.
    Required {
        /// PEM file of the CA certificates to trust instead of the system's.
        root_certificates: Option<PathBuf>,
    },
}

/// The TLS connector of a pool (built once; cloned per connection).
#[derive(Clone)]
pub(super) enum Connector {
    Plain,
    Rustls(MakeRustlsConnect),
}

impl Connector {
    pub(super) fn new(tls: &PostgresTls) -> Result<Connector, StoreError> {
        let PostgresTls::Required { root_certificates } = tls else {
            return Ok(Connector::Plain);
        };
        let mut roots = rustls::RootCertStore::empty();
        match root_certificates {
            Some(path) => {
                for certificate in read_pem_certificates(path)? {
                    roots.add(certificate).map_err(|e| {
                        StoreError::Server(format!(
                            "TLS root certificate in {}: {e}",
                            path.display()
                        ))
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        if roots.is_empty() {
            return Err(StoreError::Server(
                "TLS is required but no root certificate was found: pass a CA file".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Server(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Connector::Rustls(MakeRustlsConnect::new(config)))
    }
}

fn read_pem_certificates(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, StoreError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            StoreError::Server(format!(
                "cannot read TLS root certificates from {}: {e}",
                path.display()
            ))
        })
}

/// A pooled connection: the client and its prepared statements, by SQL text.
pub(super) struct Connection {
    pub(super) client: postgres::Client,
    pub(super) statements: HashMap<String, Statement>,
}

/// Opens connections for the pool (and the leases' own connection).
#[derive(Clone)]
pub(super) struct Manager {
    pub(super) config: postgres::Config,
    pub(super) connector: Connector,
}

impl Manager {
    pub(super) fn connect(&self) -> Result<Connection, postgres::Error> {
        let client = match &self.connector {
            Connector::Plain => self.config.connect(NoTls)?,
            Connector::Rustls(tls) => self.config.connect(tls.clone())?,
        };
        Ok(Connection {
            client,
            statements: HashMap::new(),
        })
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        Manager::connect(self)
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.client.is_closed()
    }
}

/// Statements over a client or an open transaction, prepared once per connection.
pub(super) struct Sql<'c, C: GenericClient> {
    client: &'c mut C,
    statements: &'c mut HashMap<String, Statement>,
}

pub(super) type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<'c, C: GenericClient> Sql<'c, C> {
    pub(super) fn new(client: &'c mut C, statements: &'c mut HashMap<String, Statement>) -> Self {
        Sql { client, statements }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params)
    }
}
