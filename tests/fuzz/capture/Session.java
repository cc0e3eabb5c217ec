// pgjdbc sessions recorded by capture.sh: server-side prepared statements
// (prepareThreshold=1), batches, CopyManager both ways, transactions with
// savepoints, errors, database metadata, and the same in
// preferQueryMode=simple. Arguments: host port user db; the password comes
// from PGMUX_CAPTURE_PASSWORD (never on a command line).
import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.Properties;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class Session {
	static Connection open(String[] a, String mode) throws SQLException {
		Properties p = new Properties();
		p.setProperty("user", a[2]);
		p.setProperty("password", System.getenv("PGMUX_CAPTURE_PASSWORD"));
		p.setProperty("sslmode", "disable");
		p.setProperty("prepareThreshold", "1");
		p.setProperty("ApplicationName", "capture-pgjdbc-" + mode);
		p.setProperty("preferQueryMode", mode);
		return DriverManager.getConnection("jdbc:postgresql://" + a[0] + ":" + a[1] + "/" + a[3], p);
	}

	static void run(String[] a, String mode) throws Exception {
		try (Connection c = open(a, mode)) {
			try (Statement st = c.createStatement()) {
				st.execute("CREATE TABLE IF NOT EXISTS capture_jdbc (id int PRIMARY KEY, v text, d double precision)");
				try (ResultSet rs = st.executeQuery("SELECT 1, 'one', now()")) {
					while (rs.next()) { }
				}
			}
			try (PreparedStatement ps = c.prepareStatement("SELECT v, d FROM capture_jdbc WHERE id = ?")) {
				for (int i = 0; i < 4; i++) {
					ps.setInt(1, i);
					try (ResultSet rs = ps.executeQuery()) {
						while (rs.next()) { }
					}
				}
			}
			c.setAutoCommit(false);
			try (PreparedStatement ps = c.prepareStatement(
					"INSERT INTO capture_jdbc VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v")) {
				for (int i = 0; i < 10; i++) {
					ps.setInt(1, i);
					ps.setString(2, "batch " + i + " " + mode);
					ps.setDouble(3, i / 3.0);
					ps.addBatch();
				}
				ps.executeBatch();
			}
			Savepoint sp = c.setSavepoint("jdbc_sp");
			try (Statement st = c.createStatement()) {
				st.execute("INSERT INTO capture_jdbc VALUES (1, 'dup', 0)");
			} catch (SQLException e) {
				c.rollback(sp);
			}
			c.commit();
			try (Statement st = c.createStatement()) {
				st.execute("SELECT * FROM no_such_table_jdbc");
			} catch (SQLException e) {
				c.rollback();
			}
			c.setAutoCommit(true);
			CopyManager cm = ((PGConnection) c.unwrap(PGConnection.class)).getCopyAPI();
			cm.copyIn("COPY capture_jdbc (id, v, d) FROM STDIN",
				new StringReader("500\tcopy one\t1.5\n501\tcopy two\t\\N\n"));
			ByteArrayOutputStream out = new ByteArrayOutputStream();
			cm.copyOut("COPY (SELECT * FROM capture_jdbc ORDER BY id) TO STDOUT", out);
			try (ResultSet rs = c.getMetaData().getColumns(null, "public", "capture_jdbc", null)) {
				while (rs.next()) { }
			}
			try (Statement st = c.createStatement()) {
				st.execute("DELETE FROM capture_jdbc WHERE id >= 500");
			}
		}
	}

	public static void main(String[] a) throws Exception {
		run(a, "extended");
		run(a, "simple");
		run(a, "extendedForPrepared");
	}
}
