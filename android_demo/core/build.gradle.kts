// The plain-JVM core of the RAViT Android demo: manifest, quantisation, entropy,
// thresholds, battery policy, image preprocessing and the early-exit scheduler.
// No Android or LiteRT classes, so it builds and tests on any JVM:
//   - in Android Studio, as the ":core" module of ../app (see ../app/settings.gradle.kts);
//   - without Gradle: bash run_tests.sh (javac + JUnit 4).
plugins {
    `java-library`
}

java {
    // Any JDK >= 17 builds it (Android Studio's bundled one included); --release pins the API.
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

tasks.withType<JavaCompile>().configureEach {
    options.release.set(17)
    options.encoding = "UTF-8"
    options.compilerArgs.add("-Xlint:all")  // run_tests.sh adds -Werror for the main sources.
}

dependencies {
    implementation("com.google.code.gson:gson:2.10.1")  // The version the javac run tests (Debian 2.10).
    testImplementation("junit:junit:4.13.2")
    testImplementation("org.hamcrest:hamcrest-core:1.3")
}

tasks.test {
    useJUnit()
    testLogging {
        events("failed")
        exceptionFormat = org.gradle.api.tasks.testing.logging.TestExceptionFormat.FULL
    }
}
