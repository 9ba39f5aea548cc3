package org.labinterp.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Import;

/**
 * labinterp's local HAPI FHIR JPA server (R4): HAPI's own Spring configurations plus {@link ServerConfig}.
 * Bound to 127.0.0.1; settings in application.properties, overridable from the environment
 * (LABINTERP_HAPI_PORT, LABINTERP_HAPI_DB, LABINTERP_HAPI_IGS).
 */
@SpringBootApplication(excludeName = {
	"org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration",
	"org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration",
	"org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration",
	"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration"
})
@Import({
	JpaR4Config.class,
	HapiJpaConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
	ThreadPoolFactoryConfig.class,
	ServerConfig.class
})
public class Launcher {
	public static void main(String[] args) {
		SpringApplication.run(Launcher.class, args);
	}
}
