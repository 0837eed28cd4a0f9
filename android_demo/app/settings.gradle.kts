// RAViT Android demo: open this folder (android_demo/app) in Android Studio.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()  // LiteRT (com.google.ai.edge.litert) and AndroidX live on Google's Maven.
        mavenCentral()
    }
}

rootProject.name = "RAViTDemo"

include(":app")

// The plain-JVM core (manifest, quantisation, entropy, thresholds, scheduler) is shared
// with the command-line tests in ../core (bash ../core/run_tests.sh).
include(":core")
project(":core").projectDir = file("../core")
